"""Spreadsheet engines: reading a workbook, and recalculating it from scratch (LibreOffice)."""
