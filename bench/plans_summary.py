"""Sums up auto_explain's plans of the task browser's statements (from a
PostgreSQL log on stdin): per statement, its conditions, how long it ran
and the scans it used — enough to see every filter is index-backed."""
import re
import sys

text = sys.stdin.read()
for block in re.split(r"\n(?=\S.*LOG:  duration: )", text):
    if "FROM tasks" not in block or "Query Text" not in block:
        continue
    query = re.search(r"Query Text: (.*)", block).group(1)
    where = sorted(set(re.findall(r"WHERE (.*?)(?: ORDER BY| LIMIT|$)", query)))
    conds = " | ".join(w.replace("TRUE AND ", "").replace("TRUE", "all") for w in where)
    took = re.search(r"duration: ([\d.]+) ms", block)
    scans = []
    pattern = (r"(Index Scan(?: Backward)? using (\S+)|Index Only Scan(?: Backward)? using (\S+)"
               r"|Bitmap Index Scan on (\S+)|Seq Scan on (\S+))")
    for m in re.finditer(pattern, block):
        name = next(g for g in m.groups()[1:] if g)
        kind = "seq" if m.group(0).startswith("Seq") else "bitmap" if m.group(0).startswith("Bitmap") else "index"
        if f"{kind}:{name}" not in scans:
            scans.append(f"{kind}:{name}")
    more = " …" if len(scans) > 5 else ""
    print(f"{took.group(1) if took else '?':>8} ms  {conds[:100]:<100}  {', '.join(scans[:5])}{more}")
