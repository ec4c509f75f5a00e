"""Model file formats: what a file is (:mod:`.sniff`). Every module here is torch-free."""
