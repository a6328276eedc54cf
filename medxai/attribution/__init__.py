"""3D attribution methods (one file each behind :class:`~medxai.attribution.base.AttributionMethod`),
targets, model surgery and the engine that writes heatmaps on the scan's own grid."""
