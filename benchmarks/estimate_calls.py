"""Python function calls per estimate() (cProfile's count): a deterministic proxy of the planner's
per-call overhead, for comparing two versions of the code on a machine too loaded to time them.

    python benchmarks/estimate_calls.py LABEL [sweep|distinct]    # the second word prints a profile
"""
import cProfile, pstats, itertools, sys, io
from gpuplan.planner import Checkpointing, Method, Optimizer, Precision, TrainingSetup, estimate, resolve_model
m = resolve_model("llama-3.1-8b")
base = TrainingSetup(method=Method.QLORA, seq_len=2048)
sweep = [base.with_(batch_size=b) for b in range(1, 65)]
for s in sweep: estimate(m, s)
distinct = [TrainingSetup(method=me, precision=p, optimizer=o, checkpointing=c, seq_len=s, batch_size=2)
            for me, p, o, c, s in itertools.product(Method, [Precision.BF16_MIXED, Precision.BF16_TRUE],
                                                    [Optimizer.ADAMW, Optimizer.ADAMW_8BIT], Checkpointing, range(256, 2560, 256))]
for name, work in (("sweep", lambda: [estimate(m, s) for s in sweep]), ("distinct", lambda: [estimate(m, s) for s in distinct])):
    pr = cProfile.Profile(); pr.enable(); work(); pr.disable()
    st = pstats.Stats(pr); n = len(sweep) if name == "sweep" else len(distinct)
    print(sys.argv[1], name, f"{st.total_calls / n:.0f} calls per estimate")
    if len(sys.argv) > 2 and sys.argv[2] == name:
        s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(18); print(s.getvalue()[:4000])
