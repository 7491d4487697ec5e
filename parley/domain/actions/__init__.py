"""Domain actions: the only code that changes state and the only code that emits events.

Each action validates, authorizes, writes in one store transaction (entity rows + outbox
rows), and only after commit wakes the relay. Routes and WebSocket handlers stay thin.
"""
