"""ids never reused

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 10:00:00.000000

SQLite hands the highest id of a deleted row to the next row of a table declared without
AUTOINCREMENT, so a pending change (or an alert, a notification, a log row) that names a
deleted user, account or setting by id would name its successor. This revision rebuilds
those tables with AUTOINCREMENT and starts each table's sequence past every id still named
anywhere. PostgreSQL sequences never reuse ids: nothing to do there.
"""
import json

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

TABLES = (
    'users',
    'twilio_accounts',
    'api_tokens',
    'pending_changes',
    'simple_call_settings',
    'sms_settings',
    'button_call_settings',
    'user_message_templates',
    'replacement_lists',
)
# Pending change kinds (approval registry keys) and the table their target_id names.
KIND_TABLES = {
    'twilio_account': 'twilio_accounts',
    'message_template': 'user_message_templates',
    'simple_call': 'simple_call_settings',
    'sms_setting': 'sms_settings',
    'button_call': 'button_call_settings',
    'replacement_list': 'replacement_lists',
}
# setting_type of alerts, notifications and request logs, and the table setting_id names.
SETTING_TABLES = {
    'simple_call': 'simple_call_settings',
    'sms': 'sms_settings',
    'button_call': 'button_call_settings',
}


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _named_ids(bind):
    """The highest id each table has or had that a row still names (deleted rows included)."""
    highest = {table: 0 for table in TABLES}

    def seen(table, value):
        value = _int(value)
        if value is not None and value > highest[table]:
            highest[table] = value

    for table in TABLES:
        seen(table, bind.execute(sa.text(f'SELECT MAX(id) FROM {table}')).scalar())
    for kind, target_id, payload in bind.execute(sa.text('SELECT kind, target_id, payload FROM pending_changes')):
        if kind in KIND_TABLES:
            seen(KIND_TABLES[kind], target_id)
        try:
            data = json.loads(payload or '{}')
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        seen('twilio_accounts', data.get('account_id'))
        seen('users', data.get('user_id'))
        for user_id in data.get('recipients') or []:
            seen('users', user_id)
    for source in ('alerts', 'notifications', 'request_logs'):
        rows = bind.execute(sa.text(f'SELECT setting_type, MAX(setting_id) FROM {source} GROUP BY setting_type'))
        for setting_type, setting_id in rows:
            if setting_type in SETTING_TABLES:
                seen(SETTING_TABLES[setting_type], setting_id)
    for source in ('notifications', 'request_logs'):
        seen('twilio_accounts', bind.execute(sa.text(f'SELECT MAX(account_id) FROM {source}')).scalar())
    seen('api_tokens', bind.execute(sa.text('SELECT MAX(token_id) FROM alerts')).scalar())
    return highest


def _foreign_keys_off(bind):
    """Turn SQLite's foreign keys off, so dropping a rebuilt table cascades into nothing.

    The pragma is ignored inside a transaction, and an earlier revision of the same run may
    have opened one: that revision's work is committed first.
    """
    raw = bind.connection.dbapi_connection
    if raw.in_transaction:
        raw.commit()
    raw.execute('PRAGMA foreign_keys=OFF')
    if raw.execute('PRAGMA foreign_keys').fetchone()[0]:
        raise RuntimeError('could not turn foreign keys off to rebuild tables')


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        return
    highest = _named_ids(bind)
    _foreign_keys_off(bind)
    for table in TABLES:
        with op.batch_alter_table(table, recreate='always', table_kwargs={'sqlite_autoincrement': True}):
            pass
    for table, seq in highest.items():
        updated = bind.execute(
            sa.text('UPDATE sqlite_sequence SET seq = MAX(seq, :seq) WHERE name = :name'),
            {'seq': seq, 'name': table},
        ).rowcount
        if not updated:
            bind.execute(sa.text('INSERT INTO sqlite_sequence (name, seq) VALUES (:name, :seq)'),
                         {'name': table, 'seq': seq})
    problems = bind.execute(sa.text('PRAGMA foreign_key_check')).all()
    if problems:
        raise RuntimeError(f'foreign keys broken by the rebuild: {problems[:5]}')
    # env.py turns foreign keys on again once the run is committed.


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        return
    _foreign_keys_off(bind)
    for table in TABLES:
        with op.batch_alter_table(table, recreate='always', table_kwargs={}):
            pass
    bind.execute(sa.text('DELETE FROM sqlite_sequence WHERE name IN ({})'.format(
        ', '.join(f"'{t}'" for t in TABLES))))
