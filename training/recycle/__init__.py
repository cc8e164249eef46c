"""Unsupervised Recycle-GAN and CycleGAN: unpaired (video) translation."""
