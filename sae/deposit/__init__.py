"""Bulk deposit: a folder of scans and a spreadsheet of metadata become SEDA SIPs."""
