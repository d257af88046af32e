"""spikeforge command line."""
