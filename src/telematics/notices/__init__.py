"""Customer notifications: events from triggers, subscriptions, a durable outbox, three channels.

Read docs/notifications.md first. Pure modules (`kinds`, `texts`, `retry`, `payload`) import no
I/O library; `store` holds the SQL; `targets`, `webhook`, `mail` and `broker` are the channels'
edges; `worker` runs fan-out and delivery; `api` is the router.
"""
