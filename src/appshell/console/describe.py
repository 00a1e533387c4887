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

from appshell.console.render import table

__all__ = ["describe_model"]


def _type_name(type_: Any, dialect: Any) -> str:
    try:
        return str(type_.compile(dialect=dialect))
    except Exception:
        return str(type_)


def _reflect(inspector: Any, name: str, schema: str | None) -> dict[str, Any] | None:
    if not inspector.has_table(name, schema=schema):
        return None

    def optional(method: str) -> list[dict[str, Any]]:
        try:
            return list(getattr(inspector, method)(name, schema=schema))
        except NotImplementedError:  # a dialect without that kind of reflection
            return []

    import warnings

    with warnings.catch_warnings():
        # SQLite's reflection warns that it skips expression indexes: _index_definitions reads them instead.
        warnings.simplefilter("ignore")
        uniques = optional("get_unique_constraints")
        indexes = optional("get_indexes")
    # PostgreSQL and MySQL list a unique constraint's own index too: shown once, as the constraint.
    constraint_names = {u["name"] for u in uniques if u.get("name")}
    indexes = [i for i in indexes if not i.get("duplicates_constraint") and i.get("name") not in constraint_names]
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
        "fks": [
            {
                "constrained_columns": [fk.parent.name],
                "referred_table": fk.column.table.name,
                "referred_columns": [fk.column.name],
            }
            for fk in tbl.foreign_keys
        ],
        "indexes": [
            {"name": i.name, "column_names": [c.name for c in i.columns], "unique": i.unique} for i in tbl.indexes
        ],
        "uniques": [
            {"name": u.name, "column_names": [c.name for c in u.columns]}
            for u in tbl.constraints
            if isinstance(u, UniqueConstraint)
        ]
        + [{"name": None, "column_names": [c.name]} for c in tbl.columns if c.unique],
        "checks": [
            {"name": k.name, "sqltext": str(k.sqltext)} for k in tbl.constraints if isinstance(k, CheckConstraint)
        ],
    }


def _column_rows(tbl: Any, info: dict[str, Any], dialect: Any, in_db: bool) -> list[list[Any]]:
    single_unique = {tuple(u["column_names"]) for u in info["uniques"]} | {
        tuple(i["column_names"]) for i in info["indexes"] if i.get("unique")
    }
    indexed = {i["column_names"][0] for i in info["indexes"] if i["column_names"] and len(i["column_names"]) == 1}
    fks = {
        fk["constrained_columns"][0]: f"FK {fk['referred_table']}.{fk['referred_columns'][0]}"
        for fk in info["fks"]
        if len(fk["constrained_columns"]) == 1
    }
    by_name = {c["name"]: c for c in info["columns"]}
    rows = []
    for column in tbl.columns:
        found = by_name.pop(column.name, None)
        if found is None:
            rows.append(
                [
                    column.name,
                    _type_name(column.type, dialect),
                    "yes" if column.nullable else "no",
                    "not in the database",
                ]
            )
            continue
        keys = [
            "PK" if column.name in info["pk"] else "",
            fks.get(column.name, ""),
            "unique" if (column.name,) in single_unique else "",
            "index" if column.name in indexed else "",
        ]
        rows.append(
            [
                column.name,
                _type_name(found["type"], dialect),
                "yes" if found["nullable"] else "no",
                ", ".join(filter(None, keys)),
            ]
        )
    if in_db:
        for name, found in by_name.items():  # in the database, not in the model
            rows.append([name, _type_name(found["type"], dialect), "yes" if found["nullable"] else "no", "not mapped"])
    return rows


def _index_definitions(connection: Any, name: str, schema: str | None) -> dict[str, tuple[bool, str]]:
    """Each index of a table as the database itself defines it: {name: (unique, definition)}.

    Reflection leaves out what an index is besides its plain columns (SQLite skips expression indexes
    with a warning; partial WHERE, DESC, COLLATE and INCLUDE are never shown), and then ``explain()``
    uses an index ``describe()`` does not list. So the definition comes from the database's catalog:
    ``pg_indexes.indexdef``, ``sqlite_master.sql``, MySQL/MariaDB's ``information_schema.STATISTICS``.
    """
    from sqlalchemy import text

    from appshell.safety.connection import dialect_kind

    kind = dialect_kind(connection.dialect)
    if kind == "postgresql":
        rows = connection.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes "
                "WHERE tablename = :t AND schemaname = coalesce(:s, current_schema())"
            ),
            {"t": name, "s": schema},
        )
        return {r[0]: (r[1].startswith("CREATE UNIQUE"), _after_table(r[1], using=True)) for r in rows}
    if kind == "sqlite":
        master = f"{schema}.sqlite_master" if schema else "sqlite_master"
        rows = connection.execute(
            text(f"SELECT name, sql FROM {master} WHERE type = 'index' AND tbl_name = :t AND sql IS NOT NULL"),
            {"t": name},
        )
        return {r[0]: (r[1].upper().startswith("CREATE UNIQUE"), _after_table(r[1])) for r in rows}
    if kind in ("mysql", "mariadb"):
        rows = connection.execute(
            text(
                "SELECT * FROM information_schema.STATISTICS "
                "WHERE TABLE_SCHEMA = coalesce(:s, DATABASE()) AND TABLE_NAME = :t "
                "AND INDEX_NAME <> 'PRIMARY' ORDER BY INDEX_NAME, SEQ_IN_INDEX"
            ),
            {"t": name, "s": schema},
        )
        parts: dict[str, tuple[bool, list[str]]] = {}
        for row in rows:
            r = {k.upper(): v for k, v in row._mapping.items()}
            part = r.get("EXPRESSION") or f"`{r['COLUMN_NAME']}`"  # MySQL 8's functional key parts
            part += f"({r['SUB_PART']})" if r.get("SUB_PART") else ""
            part += " DESC" if r.get("COLLATION") == "D" else ""
            parts.setdefault(r["INDEX_NAME"], (not int(r["NON_UNIQUE"]), []))[1].append(part)
        return {index: (unique, f"({', '.join(p)})") for index, (unique, p) in parts.items()}
    return {}


def _after_table(create_index: str, using: bool = False) -> str:
    """``CREATE INDEX ix ON t USING btree (lower(name)) WHERE …`` → ``(lower(name)) WHERE …``: the key
    list and what follows it; a method other than btree is kept (``gin (tags)``)."""
    at = create_index.find("(")
    if using:
        method = create_index.rfind(" USING ", 0, at)
        if method >= 0:
            name = create_index[method + 7 : at].strip()
            return create_index[at:] if name == "btree" else f"{name} {create_index[at:]}"
    return create_index[at:] if at >= 0 else create_index


def _constraint_rows(info: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    definitions = dict(info.get("definitions") or {})
    for index in info["indexes"]:
        unique, definition = definitions.pop(index["name"], (bool(index.get("unique")), ""))
        columns = definition or ", ".join(c for c in index["column_names"] if c) or str(index.get("expressions", ""))
        rows.append([index["name"] or "(unnamed)", "unique index" if unique else "index", columns])
    constraint_names = {u.get("name") for u in info["uniques"]}
    for name, (unique, definition) in sorted(definitions.items()):  # the catalog's indexes reflection left out
        if name not in constraint_names:
            rows.append([name, "unique index" if unique else "index", definition])
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
        if reflected is not None:
            reflected["definitions"] = _index_definitions(connection, tbl.name, tbl.schema)
        info = reflected if reflected is not None else _from_model(tbl)
        where = "" if reflected is not None else ", not in the database: as the model declares it"
        title = f"{mapper.class_.__name__} (table {tbl.fullname}{where})"
        parts.append(
            table(
                ["column", "type", "nullable", "keys"],
                _column_rows(tbl, info, dialect, reflected is not None),
                title,
                max_cell=200,
            )
        )
        constraints = _constraint_rows(info)
        if constraints:
            parts.append(table(["index or constraint", "kind", "columns or check"], constraints, max_cell=200))
    if mapper.relationships:
        rels = [
            [
                r.key,
                r.direction.name.lower().replace("tomany", "-to-many").replace("toone", "-to-one"),
                r.mapper.class_.__name__,
            ]
            for r in mapper.relationships
        ]
        parts.append(table(["relationship", "kind", "target"], rels))
    return "\n".join(parts)
