"""From a tape to files: the templates' texts, the layout of a workbook, the .xlsx writer, the
walkthrough document and the .json/.csv trace."""
