"""Programmes: definitions as data, the pathway engine, tasks, worklists, referrals, MDT review, KPIs
and the DHIS2 export."""
