"""Telematics service: the product's edge and composition root.

Settings, database pool and migrations, the MQTT gateway, the readings store, the HTTP API and the
CLI live here. This package imports `diagnosis` and `dispatch`; nothing imports it.
"""
