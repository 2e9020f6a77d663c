"""The billing mirror: customers, subscriptions, invoices, charges, disputes, refunds and
checkout sessions kept in PostgreSQL, access decisions, and a notifications outbox.

Importing `worker.mirror.handlers` registers its handlers with `worker.registry`, and
`worker.mirror.notifications` its sweep hook (re-enqueue unsent notifications). The worker's
entry imports them; `worker.mirror.actors.declare_delivery_actor` declares the delivery actor.
"""
