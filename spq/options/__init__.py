"""Every option of main_SPQ.py: declared once (`declared`), parsed into typed, frozen values
split by concern, checked, and merged with a checkpoint's stored options (`values`)."""
