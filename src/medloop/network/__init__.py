"""Care network: organisations with tiers, regions, coordinates and capabilities; referral routing."""
