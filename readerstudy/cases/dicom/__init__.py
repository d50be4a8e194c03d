"""DICOM import: series read into volumes (``frames``, ``series``), mapped to the seven sequences (``mapping``),
masks (``masks``), de-identified facts (``deidentify``), ``labels.csv`` (``labels``), the orchestration through the
NIfTI importer (``exam_import``), safe zip uploads (``upload``) and the admin's pages (``admin_views``)."""
