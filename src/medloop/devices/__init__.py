"""Connected devices: registry, ingestion pipeline (normalise → validate → de-duplicate → store →
evaluate), MQTT and HTTP adapters, alert rules and the dead-letter table."""
