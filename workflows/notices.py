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


def opinion_requested(case_no: str, matter_name: str, due: datetime) -> tuple[str, str]:
    return "并联审批征求意见", f"办件 {case_no}（{matter_name}）请于 {_day(due)} 24:00 前出具部门意见。"


def opinion_overdue(case_no: str, department: str) -> tuple[str, str]:
    return "部门意见逾期", f"办件 {case_no}：{department} 未在期限内出具意见，请首席协调官协调。"


def review_requested(case_no: str, matter_name: str, disagreeing: list[str]) -> tuple[str, str]:
    body = f"办件 {case_no}（{matter_name}）待综合研判。"
    if disagreeing:
        body += f"以下部门意见为不同意：{'、'.join(disagreeing)}，请一并研判。"
    return "综合研判待办", body


def returned(case_no: str, corrections: list[str]) -> tuple[str, str]:
    # One notice lists every correction (一次性告知); the case clock stops until they arrive.
    lines = [f"办件 {case_no} 需补正，请一次性补正以下内容：", *[f"  {i}. {c}" for i, c in enumerate(corrections, 1)]]
    lines.append("补正期间办理时限暂停计算。")
    return "补正告知书", "\n".join(lines)


def vote_requested(case_no: str, matter_name: str, closes: datetime) -> tuple[str, str]:
    return "集体决策表决", f"办件 {case_no}（{matter_name}）提请集体决策，表决截止 {_day(closes)} 24:00。"


def no_quorum(case_no: str, votes: int, quorum: int) -> tuple[str, str]:
    return "集体决策未达法定人数", f"办件 {case_no} 表决期满仅 {votes} 人表决（需 {quorum} 人），请主持人组织。"


def chair_awaited(case_no: str) -> tuple[str, str]:
    return "集体决策待主持人决定", f"办件 {case_no} 表决期满，表决人数已达法定人数，待主持人发表意见后决定。"


def approved(case_no: str, matter_name: str) -> tuple[str, str]:
    return "准予许可决定", f"办件 {case_no}（{matter_name}）准予办理，办理结果已出具。"


def rejected(case_no: str, reasons: str) -> tuple[str, str]:
    return "不予许可决定", f"办件 {case_no} 不予许可。理由：{reasons}"


def deadline(case_no: str, level: str, due: datetime) -> tuple[str, str]:
    if level == "red":
        return "办件超期", f"办件 {case_no} 已超过承诺时限（{_day(due)} 24:00）。"
    return "办件时限预警", f"办件 {case_no} 已用承诺时限的 80%，须于 {_day(due)} 24:00 前办结。"


def urged(case_no: str, stage: str, note: str) -> tuple[str, str]:
    return "催办", f"办件 {case_no}（{stage}）被催办。{note}".strip()


def rating_invited(case_no: str, until: datetime) -> tuple[str, str]:
    return "请您评价", f"办件 {case_no} 已办结。欢迎在 {_day(until)} 前对本次服务作出评价（好差评）。"


# ---- feedback loops (step 3) ----------------------------------------------------------------


def bad_review(case_no: str, score: int, verify_due: datetime, rectify_due: datetime) -> tuple[str, str]:
    return "差评待整改", (
        f"办件 {case_no} 收到差评（{score} 分）。请于 {_day(verify_due)} 前回访核实，"
        f"于 {_day(rectify_due)} 前整改或解释说明并答复申请人。"
    )


def bad_review_answered(case_no: str, reply: str) -> tuple[str, str]:
    return "差评整改答复", f"您对办件 {case_no} 的评价已收到并处理：{reply}"


def feedback_reminder(subject: str, step: str, due: datetime) -> tuple[str, str]:
    return "办理提醒", f"{subject}：{step} 须于 {_day(due)} 前完成。"


def feedback_overdue(subject: str, step: str, due: datetime) -> tuple[str, str]:
    return "逾期督办", f"{subject}：{step} 已超过期限（{_day(due)}），请督促办理。"


def suggestion_received(suggestion_no: str, topic: str, due: datetime) -> tuple[str, str]:
    return "意见建议待答复", f"意见建议 {suggestion_no}（{topic}）请于 {_day(due)} 前研究答复。"


def suggestion_answered(suggestion_no: str, adopted: bool, reason: str, measures: str) -> tuple[str, str]:
    if adopted:
        return "您的建议已被采纳", f"您提出的意见建议 {suggestion_no} 已被采纳。{measures}".strip()
    return "您的建议答复", f"您提出的意见建议 {suggestion_no} 未予采纳，理由：{reason}"


# ---- risks (step 4) ---------------------------------------------------------------------------


def risk_reported(risk_no: str, title: str, level: str) -> tuple[str, str]:
    return f"风险登记（{level}）", f"风险 {risk_no}：{title}，等级 {level}。请按时限组织处置。"


def risk_escalated(risk_no: str, title: str, step: str, level: str) -> tuple[str, str]:
    return "风险处置逾期上报", f"风险 {risk_no}（{title}）的 {step} 已逾期，风险等级升为 {level}，请督办。"
