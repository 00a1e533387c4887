import sys

sku, amount = sys.argv[1], int(sys.argv[2])
product = first(Product, sku=sku)
before = product.stock
product.stock += amount
if "--commit" in sys.argv:
    commit()
    print(f"{sku}: stock {before} -> {product.stock} (committed)")
else:
    rollback()
    print(f"{sku}: stock {before} -> {before + amount} (not committed: pass --commit)")
