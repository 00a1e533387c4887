"""What the operator sees and uses: the namespace, helpers, tables, reprs, protected data, refusals, history."""
