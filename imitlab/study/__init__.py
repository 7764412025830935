"""The whole study: sweeps over the stages, the imitation-gap report, and the offline demo."""
