"""Views of 通話設定(ボタン操作付き): 一覧, 新規作成, 詳細表示, 編集 and 削除, through approval."""

from __future__ import annotations

from flask import current_app, render_template, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from .. import approval
from ..access import admin_required
from ..config_views import add_error, delete_view, save_change
from ..extensions import db
from ..models import ACTIONS, SETTING_BUTTON_CALL, ButtonCallSetting, XmonSettings
from ..notify_settings.channels import Screen
from ..notify_settings.routes import load_numbers, show_page
from . import bp
from .forms import ButtonCallForm
from .kind import BUTTON_CALL_KIND

BUTTON_CALL = Screen(
    blueprint="button_calls",
    setting_type=SETTING_BUTTON_CALL,
    kind=BUTTON_CALL_KIND,
    form_class=ButtonCallForm,
    intro=(
        "Twilioを用いた電話通知を行う際の設定を行います。登録した通話設定は電話通知を行いたいホストやサービスの"
        "エスカレーション設定に登録することで電話通知を行います。"
    ),
)
# The メッセージテンプレート screen (§5.2.2), linked from the 一覧 once it is installed.
MESSAGE_TEMPLATES = "message_templates.index"


def _form_page(setting: ButtonCallSetting | None = None) -> Response | str:
    """新規作成 and 編集: one form whose buttons save, refresh From, or add, remove and move rows."""
    form = ButtonCallForm(setting=setting)
    if not form.accounts:
        return render_template("notify_settings/no_account.html", channel=BUTTON_CALL, setting=setting)
    numbers_error = load_numbers(form)
    if form.is_submitted():
        if form.add_recipient.data:
            form.add_row()
        elif form.remove_recipient.data is not None:
            form.remove_row(form.remove_recipient.data)
        elif form.move_up.data is not None:
            form.move_row(form.move_up.data, -1)
        elif form.move_down.data is not None:
            form.move_row(form.move_down.data, 1)
        elif (form.submit.data or form.submit_approve.data) and form.validate():
            response = save_change(BUTTON_CALL.pages, form, setting)
            if response is not None:
                return response
    if numbers_error:
        add_error(form.from_number, numbers_error)
    return render_template(
        "button_calls/form.html",
        screen=BUTTON_CALL,
        form=form,
        setting=setting,
        account_data=form.accounts_data(),
        xmon_url=XmonSettings.get().xmon_url,
    )


def _get_or_404(setting_id: int) -> ButtonCallSetting:
    return db.get_or_404(ButtonCallSetting, setting_id)


@bp.route("/")
@admin_required
def index() -> str:
    """List the approved settings and the pending changes."""
    settings = db.session.scalars(select(ButtonCallSetting).order_by(ButtonCallSetting.name)).all()
    has_templates = MESSAGE_TEMPLATES in current_app.view_functions
    return render_template(
        "button_calls/index.html",
        channel=BUTTON_CALL,
        rows=[(s, BUTTON_CALL.field_texts(s)) for s in settings],
        pending=approval.pending_for(BUTTON_CALL_KIND),
        actions=ACTIONS,
        has_account=bool(ButtonCallForm.offered_accounts()),
        templates_url=url_for(MESSAGE_TEMPLATES) if has_templates else None,
    )


@bp.route("/new", methods=["GET", "POST"])
@admin_required
def new() -> Response | str:
    """Propose (作成) or create and approve (作成と承認) a setting."""
    return _form_page()


@bp.route("/<int:setting_id>")
@admin_required
def show(setting_id: int) -> str:
    """Show one setting, its pending changes and its escalation commands."""
    return show_page(BUTTON_CALL, setting_id)


@bp.route("/<int:setting_id>/edit", methods=["GET", "POST"])
@admin_required
def edit(setting_id: int) -> Response | str:
    """Propose (編集) or apply (編集と承認) changes to a setting."""
    return _form_page(_get_or_404(setting_id))


@bp.route("/<int:setting_id>/delete", methods=["POST"])
@admin_required
def delete(setting_id: int) -> Response:
    """Propose (削除) or apply (削除と承認) the deletion of a setting."""
    return delete_view(BUTTON_CALL.pages, _get_or_404(setting_id))
