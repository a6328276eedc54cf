"""``medxai validate``: a known-ground-truth benchmark of the attribution methods on phantoms."""
