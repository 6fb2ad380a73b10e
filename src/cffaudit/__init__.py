"""cffaudit: Contrastive Forward-Forward training and seed-variance audits."""

__version__ = "0.1.0"
