"""What the API and the queue can ask for, one class per action. Each checks who may, validates,
records (grants and audit) and hands over to enforcement; none knows about HTTP or queues."""
