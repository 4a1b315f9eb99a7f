"""The SQL files, installed as the package ``recsys._sql`` (read by ``recsys.sql``)."""
