"""What can be named and read: config, the registry file, datasets and variants, models and probes, uploads."""
