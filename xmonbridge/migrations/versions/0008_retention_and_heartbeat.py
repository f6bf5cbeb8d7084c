"""retention and heartbeat

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 09:00:00.000000

X-MON 設定 gains the retention period (alerts, calls and ログ rows older than it are deleted)
and the optional heartbeat SMS. Since rows of alerts, notifications, deliveries, attempts,
acknowledgements, request logs and simulated messages are now deleted, SQLite rebuilds those
tables with AUTOINCREMENT so a deleted row's id is never handed to a new one (a link or a log
line naming an old alert never names a new alert). PostgreSQL sequences never reuse ids.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TABLES = (
    'alerts',
    'notifications',
    'deliveries',
    'attempts',
    'acknowledgements',
    'request_logs',
    'simulated_messages',
)


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
    sqlite = bind.dialect.name == 'sqlite'
    if sqlite:
        _foreign_keys_off(bind)
    with op.batch_alter_table('xmon_settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retention_days', sa.Integer(), server_default='400', nullable=False))
        batch_op.add_column(sa.Column('heartbeat_user_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_sms_setting_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_dispatcher_minutes', sa.Integer(), server_default='10', nullable=False))
        batch_op.add_column(sa.Column('heartbeat_twilio_minutes', sa.Integer(), server_default='30', nullable=False))
        batch_op.add_column(sa.Column('heartbeat_dispatcher_sent_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_twilio_sent_at', sa.DateTime(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_xmon_settings_heartbeat_user_id_users'), 'users', ['heartbeat_user_id'], ['id'],
            ondelete='SET NULL')
        batch_op.create_foreign_key(
            batch_op.f('fk_xmon_settings_heartbeat_sms_setting_id_sms_settings'), 'sms_settings',
            ['heartbeat_sms_setting_id'], ['id'], ondelete='SET NULL')
    if not sqlite:
        return
    highest = {table: bind.execute(sa.text(f'SELECT MAX(id) FROM {table}')).scalar() or 0 for table in TABLES}
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
    sqlite = bind.dialect.name == 'sqlite'
    if sqlite:
        _foreign_keys_off(bind)
        for table in TABLES:
            with op.batch_alter_table(table, recreate='always', table_kwargs={}):
                pass
        bind.execute(sa.text('DELETE FROM sqlite_sequence WHERE name IN ({})'.format(
            ', '.join(f"'{t}'" for t in TABLES))))
    with op.batch_alter_table('xmon_settings', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_xmon_settings_heartbeat_sms_setting_id_sms_settings'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_xmon_settings_heartbeat_user_id_users'), type_='foreignkey')
        batch_op.drop_column('heartbeat_twilio_sent_at')
        batch_op.drop_column('heartbeat_dispatcher_sent_at')
        batch_op.drop_column('heartbeat_twilio_minutes')
        batch_op.drop_column('heartbeat_dispatcher_minutes')
        batch_op.drop_column('heartbeat_sms_setting_id')
        batch_op.drop_column('heartbeat_user_id')
        batch_op.drop_column('retention_days')
