"""Video files: reading (``reader``, ``stream``, ``backends``), writing (``writer``), clip specs (``clips``), frame formats (``frames``), manifests and folder datasets (``folder``)."""
