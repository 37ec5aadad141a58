"""Evaluations: every evaluation of this key's user, and models compared side by side on one
dataset (accuracy, pass@k, response length, unscorable share, and one row's completions each)."""

from __future__ import annotations

import streamlit as st

from client import ApiError
from dashboard import evaluations, state

MODEL_DEFAULT = "model default"

st.title("Evaluations")
url, key = state.connection()
if notice := st.session_state.pop("evals_notice", None):
    st.success(notice, icon=":material/check_circle:")


def _create(body: dict) -> None:
    """Create the evaluation the form describes; a refusal is shown naming the field."""
    try:
        created = state.client().create_eval(**body)
    except ApiError as exc:
        if exc.status in (None, 401, 403) and exc.param is None:
            state.stop_on_error(exc)  # unreachable API or wrong key: not a form problem
        st.session_state["evals_form_error"] = f"{exc.param}: {exc.message}" if exc.param \
            else exc.message
        return
    state.clear_caches()
    st.session_state["evals_notice"] = f"Evaluation {created.id} queued."


with st.expander("Evaluate a model", icon=":material/add_circle:",
                 expanded="evals_form_error" in st.session_state):
    if error := st.session_state.pop("evals_form_error", None):
        st.error(error, icon=":material/error:")
    models = [m["id"] for m in state.call(state.fetch_models, url, key)]
    datasets = state.call(state.fetch_datasets, url, key)
    rewards = [r["name"] for r in state.call(state.fetch_components, url, key)["rewards"]]
    with st.form("evals_form"):
        c1, c2, c3 = st.columns(3)
        model = c1.selectbox("Model", models, key="evals_new_model")
        dataset = c2.selectbox("Dataset", [d["id"] for d in datasets], key="evals_new_dataset",
                               format_func=lambda d: next(f"{x['name']} ({d})" for x in datasets
                                                          if x["id"] == d))
        # Left at "model default", the server takes the reward and length the model recommends
        # to its jobs (its config_defaults), else math and 256 tokens.
        reward = c3.selectbox("Reward", [MODEL_DEFAULT, *rewards], key="evals_new_reward")
        c1, c2, c3, c4 = st.columns(4)
        k = c1.number_input("Samples per prompt (k)", 1, 256, 1, key="evals_new_k")
        temperature = c2.number_input("Temperature (0 = greedy)", 0.0, 10.0, 0.0, 0.1,
                                      key="evals_new_temperature")
        max_new_tokens = c3.number_input("Max new tokens (0 = model default)", 0, 65536, 0,
                                         key="evals_new_tokens")
        max_rows = c4.number_input("Max rows (0 = all)", 0, 1_000_000, 0, key="evals_new_rows")
        if st.form_submit_button("Evaluate", type="primary"):
            if not model or not dataset:
                st.session_state["evals_form_error"] = "pick a model and a dataset"
            else:
                _create({"model": model, "dataset_id": dataset,
                         "samples_per_prompt": int(k), "temperature": float(temperature),
                         **({"reward": reward} if reward != MODEL_DEFAULT else {}),
                         **({"max_new_tokens": int(max_new_tokens)} if max_new_tokens else {}),
                         **({"max_rows": int(max_rows)} if max_rows else {})})
            st.rerun()

evals = state.call(state.fetch_evals, url, key)
if not evals:
    st.info("No evaluations yet. Start one above, with `basis evals create --model NAME "
            "--dataset ID` or with `POST /v1/evals`.", icon=":material/info:")
    st.stop()

datasets = state.call(state.fetch_datasets, url, key)
names = {d["id"]: d["name"] for d in datasets}
st.dataframe(
    evaluations.evals_frame(evals, names), hide_index=True, width="stretch", key="evals_table",
    column_config={
        "id": st.column_config.TextColumn("evaluation", width="medium"),
        "accuracy": st.column_config.NumberColumn("accuracy", format="%.3f"),
        "pass@k": st.column_config.NumberColumn("pass@k", format="%.3f",
                                                help="pass@k at k = samples per prompt"),
        "tokens": st.column_config.NumberColumn("tokens", format="%.1f", help="mean response length"),
        "unscorable": st.column_config.NumberColumn("unscorable", format="%.3f"),
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                    format="percent", width="small"),
        "created": st.column_config.DatetimeColumn("created (UTC)", format="MMM D, HH:mm"),
    },
)
st.caption(f"{len(evals)} evaluation(s).")

st.subheader("Compare models on one dataset")
evaluated = evaluations.datasets_evaluated(evals)
if not evaluated:
    st.info("No evaluation has results yet; they appear after its first batch of rows.")
    st.stop()
if "evals_dataset" not in st.session_state:
    linked = st.query_params.get("dataset", "")
    st.session_state["evals_dataset"] = linked if linked in evaluated else evaluated[0]
dataset_id = st.selectbox("Dataset", evaluated, key="evals_dataset",
                          format_func=lambda d: f"{names.get(d, d)} ({d})")
on_dataset = [e for e in evals if e.get("dataset_id") == dataset_id and e.get("results")]
by_id = {e["id"]: e for e in on_dataset}
pick_key = f"evals_pick_{dataset_id}"
if pick_key not in st.session_state:
    wanted = [i for i in st.query_params.get("evals", "").split(",") if i in by_id]
    st.session_state[pick_key] = wanted or evaluations.default_pick(on_dataset, dataset_id)
label_of = evaluations.labels(on_dataset)
chosen = st.multiselect("Evaluations", list(by_id), key=pick_key,
                        format_func=lambda i: f"{label_of[i]} · {by_id[i]['status']} · {i}")
if not chosen:
    st.info("Pick one or more evaluations to compare.")
    st.stop()
st.query_params["dataset"] = dataset_id
st.query_params["evals"] = ",".join(chosen)
picked = [by_id[i] for i in chosen]

if differing := evaluations.differences(picked):
    st.warning("These evaluations were run differently: " + "; ".join(differing) + ". Their "
               "figures do not measure the same thing; compare evaluations run alike.",
               icon=":material/warning:")
st.dataframe(evaluations.comparison_frame(picked), width="stretch", key="evals_compare")
state.show(st, evaluations.comparison_chart(picked))

st.subheader("Completions")
rows = min(e["results"]["rows"] for e in picked)
row = st.number_input("Dataset row", min_value=0, max_value=max(rows - 1, 0), value=0, step=1,
                      key="evals_row", help="Rows evaluated by every picked evaluation.")
labels = evaluations.labels(picked)
samples = {labels[e["id"]]: state.call(state.fetch_eval_samples, url, key, e["id"], int(row))
           for e in picked}
prompt, answer, frame = evaluations.row_samples(samples, int(row))
if prompt is None:
    st.info(f"No samples for row {row} yet.")
else:
    st.code(f"prompt: {prompt}\nanswer: {answer}", language=None)
    st.dataframe(frame, hide_index=True, width="stretch", key="evals_samples")
