"""Heatmaps to masks: threshold rules, clean-up, overlap scores, weakly-supervised segmentation of scans."""
