"""The price-alert sensor: notifies travellers' alerts (webapp/alerts.py) whose fare fell below the threshold.

Notifications go through the collector's channels (FARES_ALERT_SMTP_*, FARES_ALERT_WEBHOOK_URL), off
unless configured; FARES_WEB_PUBLIC_URL is the fare page address the notification links to.
"""
import datetime as dt

import psycopg
from dagster import DefaultSensorStatus, SensorEvaluationContext, SkipReason, sensor
from psycopg.rows import dict_row

from fare_assets.resources import WarehouseResource
from fare_assets.settings import env_or_default, load_settings
from fare_assets.storing import warehouse
from fare_assets.streaming.notify import NO_CHANNEL, alert_settings_from_env
from webapp.alerts import notify_due_alerts

# Fares are collected every 30 minutes, so checking every 5 minutes notifies soon after a load.
CHECK_EVERY_SECONDS = 300


def web_public_url() -> str:
    """The fare page's address as travellers reach it."""
    return env_or_default("FARES_WEB_PUBLIC_URL", load_settings().page_url)


# Running by default like the collector's alert: without a configured channel it only skips.
@sensor(name="price_alerts", minimum_interval_seconds=CHECK_EVERY_SECONDS, default_status=DefaultSensorStatus.RUNNING,
        description="Notify price alerts whose trip's cheapest fare fell below the threshold (FARES_ALERT_*).")
def price_alert_sensor(context: SensorEvaluationContext, warehouse_db: WarehouseResource):
    """Send due price alerts once each; failed sends retry on the next tick."""
    settings = alert_settings_from_env()
    if not settings.channels:
        return SkipReason(NO_CHANNEL)
    now = dt.datetime.now(dt.timezone.utc)
    with psycopg.connect(warehouse_db.dsn, row_factory=dict_row, autocommit=True, connect_timeout=10) as conn:
        # An upgraded warehouse gains the alerts' new columns here if no load has run since (a catalog read otherwise).
        warehouse.ensure_schema(conn)
        outcome = notify_due_alerts(conn, settings, web_public_url(), now)
    if outcome is None:
        return SkipReason("an earlier evaluation is still sending price alerts")
    if outcome["failed"]:
        raise RuntimeError(f"price alerts not sent: {outcome['failed']}")
    if not outcome["sent"]:
        return SkipReason("no price alert is below its threshold")
    context.log.info(f"price alerts sent: {outcome['sent']} by {', '.join(settings.channels)}")
    return SkipReason(f"sent {len(outcome['sent'])} price alert(s)")
