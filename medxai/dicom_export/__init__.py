"""DICOM outputs of a case folder (SEG, Parametric Map, Encapsulated PDF, TID 1500 SR) in its source study:
:func:`medxai.dicom_export.export.export_case`."""
