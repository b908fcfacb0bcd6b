"""How notices to applicants and departments are worded (Chinese: they go to people)."""

from datetime import datetime, timedelta

from contract.common import SHANGHAI


def _day(deadline: datetime) -> str:
    # A deadline is 24:00 of its last day, i.e. 00:00 of the next: name the last day.
    return (deadline - timedelta(seconds=1)).astimezone(SHANGHAI).strftime("%Y-%m-%d")


def not_accepted(case_no: str, missing: list[str], reasons: list[str]) -> tuple[str, str]:
    # 行政许可法 §32: ONE notice names everything missing or faulty.
    lines = [f"办件 {case_no} 不予受理。"]
    if missing:
        lines.append("请一次性补齐以下材料后重新申请：")
        lines += [f"  {i}. {name}" for i, name in enumerate(missing, 1)]
    if reasons:
        lines.append("原因：")
        lines += [f"  - {reason}" for reason in reasons]
    return "不予受理一次性告知书", "\n".join(lines)


def accepted(case_no: str, matter_name: str, promised_due: datetime) -> tuple[str, str]:
    return "受理通知书", f"办件 {case_no}（{matter_name}）已受理，承诺办结时间：{_day(promised_due)} 24:00 前。"


def deferral_accepted(case_no: str, deferred: list[str], due: datetime) -> tuple[str, str]:
    lines = [
        f"办件 {case_no} 已容缺受理。请于 {_day(due)} 24:00 前补交以下材料：",
        *[f"  {i}. {name}" for i, name in enumerate(deferred, 1)],
        "逾期未补交的，终止办理，并记录承诺失信，今后不得再适用容缺受理。",
        "全部材料补齐前不予出具办理结果。",
    ]
    return "容缺受理告知书", "\n".join(lines)


def deferral_reminder(case_no: str, missing: list[str], due: datetime) -> tuple[str, str]:
    names = "、".join(missing)
    return "补交材料提醒", f"办件 {case_no} 尚缺：{names}。补交期限 {_day(due)} 24:00，逾期将终止办理。"


def terminated(case_no: str, missing: list[str]) -> tuple[str, str]:
    names = "、".join(missing)
    return "终止办理通知书", f"办件 {case_no} 未在承诺期限内补交材料（{names}），终止办理，已记录承诺失信。"


def withdrawn(case_no: str) -> tuple[str, str]:
    return "撤回申请确认", f"办件 {case_no} 已按申请撤回。"
