"""The last line of `make mutate`: the mutation score from mutmut's CI/CD stats.

Killed = mutants a test failed on, plus those that ran past mutmut's timeout (a mutant that makes
the timing loop spin forever is caught by the timeout). Every other mutant that ran counts against
the score: survived, no tests, suspicious. Skipped mutants (not run) are left out.
"""

import json
import sys

stats = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "mutants/mutmut-cicd-stats.json"))
killed = stats["killed"] + stats["timeout"] + stats["segfault"]
total = stats["total"] - stats["skipped"]
print(f"mutation score: {100 * killed // max(total, 1)}% ({killed} of {total} mutants killed)")
