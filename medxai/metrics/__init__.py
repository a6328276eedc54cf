"""Scores of explanations: faithfulness, robustness, localisation in mm, randomisation sanity, benchmark."""
