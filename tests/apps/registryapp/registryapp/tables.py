"""Imperative (classical) mapping: a MetaData, Tables and a registry."""

from sqlalchemy import Column, Integer, MetaData, String, Table
from sqlalchemy.orm import registry

metadata = MetaData()
mapper_registry = registry(metadata=metadata)

widgets = Table("widgets", metadata, Column("id", Integer, primary_key=True), Column("label", String(50)))


class Widget:
    pass


mapper_registry.map_imperatively(Widget, widgets)
