"""The service's routes, one APIRouter per area (serving/app.py includes them)."""
