"""Dispatch: engineer matching, order lifecycle and service-level timers.

May use `diagnosis` types; never imports `telematics`.
"""
