"""Create the schema and a deterministic data set: ``python -m shop.seed``."""

from __future__ import annotations

import random
from decimal import Decimal

from sqlalchemy import func, select

from shop.db import SessionLocal, engine
from shop.models import Base, Customer, Order, OrderLine, Product

COUNTRIES = ["DE", "FR", "NL", "SE", "US"]
STATUSES = ["new", "paid", "shipped", "cancelled"]


def seed(customers: int = 20, products: int = 8, orders: int = 50) -> bool:
    """Seed an empty database; returns False (and changes nothing) if it has customers."""
    Base.metadata.create_all(engine)
    rng = random.Random(42)
    with SessionLocal() as session:
        if session.scalar(select(func.count()).select_from(Customer)):
            return False
        people = [
            Customer(email=f"customer{i}@example.com", name=f"Customer {i}", country=COUNTRIES[i % len(COUNTRIES)])
            for i in range(1, customers + 1)
        ]
        goods = [
            Product(sku=f"SKU-{i:03d}", title=f"Product {i}", price=Decimal(f"{5 * i}.99"), stock=10 * i)
            for i in range(1, products + 1)
        ]
        session.add_all(people + goods)
        for i in range(orders):
            order = Order(customer=people[i % customers], status=STATUSES[i % len(STATUSES)])
            for product in rng.sample(goods, k=1 + i % 3):
                order.lines.append(OrderLine(product=product, quantity=1 + i % 4, unit_price=product.price))
            session.add(order)
        session.commit()
    return True


if __name__ == "__main__":
    print("seeded the shop database" if seed() else "the shop database is already seeded")
