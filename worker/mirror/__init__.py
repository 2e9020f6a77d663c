"""The billing mirror: customers, subscriptions, invoices, charges, disputes."""
