"""The archive: every candidate of a campaign, its lineage and stage results, in one database."""
