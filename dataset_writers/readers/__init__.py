"""One module per dataset; each registers its reader with ``dataset_writers.registry.register_reader``."""
