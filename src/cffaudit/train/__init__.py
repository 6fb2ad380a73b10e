"""Training: stage 1 (layer-local contrastive), stage 2 (linear probe), run wiring."""
