"""security review: login failures per address, server-side sessions, phone audit, pending uniqueness

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 16:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

PENDING_CREATE = sa.text("status = 'pending' AND action = 'create'")
PENDING_DELETE = sa.text("status = 'pending' AND action = 'delete'")


def upgrade():
    # Failures are counted per (login, address) now; old per-name counters are dropped,
    # which at worst forgets a few recent failures.
    op.drop_table('login_failures')
    op.create_table('login_failures',
    sa.Column('login', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('first_failure_at', sa.DateTime(), nullable=False),
    sa.Column('locked_until', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('login', 'address')
    )
    op.create_table('user_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_sessions_user_id'), ['user_id'], unique=False)

    op.create_table('phone_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('changed_at', sa.DateTime(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('user_login', sa.String(length=64), nullable=False),
    sa.Column('changed_by_id', sa.Integer(), nullable=True),
    sa.Column('changed_by_login', sa.String(length=64), nullable=False),
    sa.Column('old_masked', sa.String(length=32), nullable=False),
    sa.Column('new_masked', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['changed_by_id'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('phone_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_phone_changes_changed_at'), ['changed_at'], unique=False)

    # Duplicates recorded before this revision would block the unique indexes: keep the
    # oldest pending create per name and pending delete per object, reject the rest.
    for action, column in (('create', 'target_name'), ('delete', 'target_id')):
        op.execute(
            f"UPDATE pending_changes SET status = 'rejected' WHERE status = 'pending' AND action = '{action}' "
            f"AND id NOT IN (SELECT MIN(id) FROM pending_changes WHERE status = 'pending' AND action = '{action}' "
            f"GROUP BY kind, {column})"
        )
    with op.batch_alter_table('pending_changes', schema=None) as batch_op:
        batch_op.create_index('uq_pending_create_name', ['kind', 'target_name'], unique=True,
                              sqlite_where=PENDING_CREATE, postgresql_where=PENDING_CREATE)
        batch_op.create_index('uq_pending_delete_target', ['kind', 'target_id'], unique=True,
                              sqlite_where=PENDING_DELETE, postgresql_where=PENDING_DELETE)


def downgrade():
    with op.batch_alter_table('pending_changes', schema=None) as batch_op:
        batch_op.drop_index('uq_pending_delete_target')
        batch_op.drop_index('uq_pending_create_name')
    with op.batch_alter_table('phone_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_phone_changes_changed_at'))
    op.drop_table('phone_changes')
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_sessions_user_id'))
    op.drop_table('user_sessions')
    op.drop_table('login_failures')
    op.create_table('login_failures',
    sa.Column('login', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('first_failure_at', sa.DateTime(), nullable=False),
    sa.Column('locked_until', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('login')
    )
