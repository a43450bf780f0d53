"""The coffee-shop demo: four customers served sequentially, then concurrently.

The barista is guarded: an input guardrail refuses an abusive fifth customer,
cancelling the barista's model call in flight while the others are served;
each customer has a budget (td.usage_limits), and the run's cost is printed.

Run: python examples/coffee_shop.py [--time-scale 0.1] [--customers N]
     python examples/coffee_shop.py --price openai/gpt-4o-mini   # or --price 0.15,0.60
     python examples/coffee_shop.py --model openai/gpt-4o-mini   # a real endpoint

The agent itself (typed actions, the shop's tools, ReAct) is in
trio_dspy/demo/coffee_shop.py; the customers and the simulated model's script
in trio_dspy/demo/story.py. `trio-dspy demo` runs the same thing.
"""

import sys

from trio_dspy.demo.runner import main

if __name__ == "__main__":
    sys.exit(main())
