"""describe(Model): what the database itself holds for a model's table (issue 13 item 7).

Types are the database's own (``uuid``, ``TIMESTAMP WITH TIME ZONE``, an enum's
name — not the model's ``CHAR(32)``), read by reflection on the session's own
connection, so a table created in this session's transaction is seen too.
Indexes and unique and check constraints are listed whether they come from
``index=True``, ``__table_args__`` or a migration. Where the table is missing
from the database, the model's declaration is shown and the title says so.
"""

from __future__ import annotations

from typing import Any

from appshell.render import table

__all__ = ["describe_model"]


def _type_name(type_: Any, dialect: Any) -> str:
    try:
        return str(type_.compile(dialect=dialect))
    except Exception:  # noqa: BLE001 - a type the dialect cannot render still has a name
        return str(type_)


def _reflect(inspector: Any, name: str, schema: str | None) -> dict[str, Any] | None:
    if not inspector.has_table(name, schema=schema):
        return None

    def optional(method: str) -> list[dict[str, Any]]:
        try:
            return list(getattr(inspector, method)(name, schema=schema))
        except NotImplementedError:  # a dialect without that kind of reflection
            return []

    uniques = optional("get_unique_constraints")
    # PostgreSQL and MySQL list a unique constraint's own index too: shown once, as the constraint.
    constraint_names = {u["name"] for u in uniques if u.get("name")}
    indexes = [i for i in optional("get_indexes") if not i.get("duplicates_constraint") and i.get("name") not in constraint_names]
    return {
        "columns": inspector.get_columns(name, schema=schema),
        "pk": inspector.get_pk_constraint(name, schema=schema).get("constrained_columns") or [],
        "fks": inspector.get_foreign_keys(name, schema=schema),
        "indexes": indexes,
        "uniques": uniques,
        "checks": optional("get_check_constraints"),
    }


def _from_model(tbl: Any) -> dict[str, Any]:
    from sqlalchemy import CheckConstraint, UniqueConstraint

    return {
        "columns": [{"name": c.name, "type": c.type, "nullable": c.nullable} for c in tbl.columns],
        "pk": [c.name for c in tbl.primary_key.columns],
        "fks": [{"constrained_columns": [fk.parent.name], "referred_table": fk.column.table.name, "referred_columns": [fk.column.name]} for fk in tbl.foreign_keys],
        "indexes": [{"name": i.name, "column_names": [c.name for c in i.columns], "unique": i.unique} for i in tbl.indexes],
        "uniques": [{"name": u.name, "column_names": [c.name for c in u.columns]} for u in tbl.constraints if isinstance(u, UniqueConstraint)]
        + [{"name": None, "column_names": [c.name]} for c in tbl.columns if c.unique],
        "checks": [{"name": k.name, "sqltext": str(k.sqltext)} for k in tbl.constraints if isinstance(k, CheckConstraint)],
    }


def _column_rows(tbl: Any, info: dict[str, Any], dialect: Any, in_db: bool) -> list[list[Any]]:
    single_unique = {tuple(u["column_names"]) for u in info["uniques"]} | {
        tuple(i["column_names"]) for i in info["indexes"] if i.get("unique")
    }
    indexed = {i["column_names"][0] for i in info["indexes"] if i["column_names"] and len(i["column_names"]) == 1}
    fks = {fk["constrained_columns"][0]: f"FK {fk['referred_table']}.{fk['referred_columns'][0]}" for fk in info["fks"] if len(fk["constrained_columns"]) == 1}
    by_name = {c["name"]: c for c in info["columns"]}
    rows = []
    for column in tbl.columns:
        found = by_name.pop(column.name, None)
        if found is None:
            rows.append([column.name, _type_name(column.type, dialect), "yes" if column.nullable else "no", "not in the database"])
            continue
        keys = ["PK" if column.name in info["pk"] else "", fks.get(column.name, ""), "unique" if (column.name,) in single_unique else "", "index" if column.name in indexed else ""]
        rows.append([column.name, _type_name(found["type"], dialect), "yes" if found["nullable"] else "no", ", ".join(filter(None, keys))])
    if in_db:
        for name, found in by_name.items():  # in the database, not in the model
            rows.append([name, _type_name(found["type"], dialect), "yes" if found["nullable"] else "no", "not mapped"])
    return rows


def _constraint_rows(info: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for index in info["indexes"]:
        kind = "unique index" if index.get("unique") else "index"
        columns = ", ".join(c for c in index["column_names"] if c) or str(index.get("expressions", ""))
        rows.append([index["name"] or "(unnamed)", kind, columns])
    for unique in info["uniques"]:
        rows.append([unique["name"] or "(unnamed)", "unique", ", ".join(unique["column_names"])])
    for check in info["checks"]:
        rows.append([check["name"] or "(unnamed)", "check", check["sqltext"]])
    return rows


def describe_model(mapper: Any, connection: Any) -> str:
    """Columns (with the database's types), indexes and constraints, and relationships of a mapped class."""
    from sqlalchemy import inspect as sa_inspect

    inspector = sa_inspect(connection)
    dialect = connection.dialect
    parts = []
    for tbl in mapper.tables:
        reflected = _reflect(inspector, tbl.name, tbl.schema)
        info = reflected if reflected is not None else _from_model(tbl)
        where = "" if reflected is not None else ", not in the database: as the model declares it"
        title = f"{mapper.class_.__name__} (table {tbl.fullname}{where})"
        parts.append(table(["column", "type", "nullable", "keys"], _column_rows(tbl, info, dialect, reflected is not None), title, max_cell=200))
        constraints = _constraint_rows(info)
        if constraints:
            parts.append(table(["index or constraint", "kind", "columns or check"], constraints, max_cell=200))
    if mapper.relationships:
        rels = [[r.key, r.direction.name.lower().replace("tomany", "-to-many").replace("toone", "-to-one"), r.mapper.class_.__name__] for r in mapper.relationships]
        parts.append(table(["relationship", "kind", "target"], rels))
    return "\n".join(parts)
