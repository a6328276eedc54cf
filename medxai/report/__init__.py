"""The radiologist's PDF report and the cohort summary: figures (radiological views), layout; reads results, computes nothing heavy."""
