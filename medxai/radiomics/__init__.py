"""Radiomics with peritumoral expansion: lesion segmenters, shells in mm, PyRadiomics extraction, CV study.

Seed method: Tushar FI et al., "Peritumoral Expansion Radiomics for Improved Lung Cancer Classification"
(2024). Modules: ``boxes`` (box/seed regions), ``segmenters``, ``shells``, ``tissue``, ``params``,
``extract`` (one case), ``batch`` (manifests, workers, resume), ``study`` (cross-validated AUC).
"""
