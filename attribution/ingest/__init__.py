"""Ingestion of CUR/FOCUS exports, GPU usage rollups and training runs into the warehouse."""
