"""Sequential vs nursery vs nursery-with-limit over real HTTP (see trio_dspy/demo/bench.py).

Run: python benchmarks/nursery_vs_sequential.py [--sizes 1,4,16,64,256,1024] [--latency 0.5]
     python benchmarks/nursery_vs_sequential.py --compare-dspy --dspy-python PYTHON_WITH_DSPY

`trio-dspy bench` runs the same thing. Results go to bench-results/ (JSON, text, PNG).
"""

import sys

from trio_dspy.demo.bench import main

if __name__ == "__main__":
    sys.exit(main())
