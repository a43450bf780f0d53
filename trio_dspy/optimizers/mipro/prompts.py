"""MIPROv2's prompts, word for word as DSPy 3.3 has them (typos included).

The dataset summarizer's three signatures, the program and module
describers, the instruction generator (whose optional fields are dropped by
:func:`instruction_signature`), and the tips, in DSPy's order (a seeded
choice among them must pick the same tip).
"""

from __future__ import annotations

from ...signature import InputField, OutputField, Signature, signature_from_fields

__all__ = [
    "TIPS",
    "DatasetDescriptor",
    "DatasetDescriptorWithPriorObservations",
    "DescribeModule",
    "DescribeProgram",
    "GenerateSingleModuleInstruction",
    "ObservationSummarizer",
    "instruction_signature",
]

TIPS: dict[str, str] = {
    "none": "",
    "creative": "Don't be afraid to be creative when creating the new instruction!",
    "simple": "Keep the instruction clear and concise.",
    "description": "Make sure your instruction is very informative and descriptive.",
    "high_stakes": "The instruction should include a high stakes scenario in which the LM must solve the task!",  # noqa: E501
    "persona": 'Include a persona that is relevant to the task in the instruction (ie. "You are a ...")',  # noqa: E501
}


class ObservationSummarizer(Signature):
    """Given a series of observations I have made about my dataset, please summarize them into a brief 2-3 sentence summary which highlights only the most important details."""  # noqa: E501

    observations: str = InputField(desc="Observations I have made about my dataset")
    summary: str = OutputField(
        desc="Two to Three sentence summary of only the most significant highlights of my observations"  # noqa: E501
    )


class DatasetDescriptor(Signature):
    """Given several examples from a dataset please write observations about trends that hold for most or all of the samples. Some areas you may consider in your observations: topics, content, syntax, conciseness, etc. It will be useful to make an educated guess as to the nature of the task this dataset will enable. Don't be afraid to be creative"""  # noqa: E501

    examples: str = InputField(desc="Sample data points from the dataset")
    observations: str = OutputField(
        desc="Somethings that holds true for most or all of the data you observed"
    )


class DatasetDescriptorWithPriorObservations(Signature):
    """Given several examples from a dataset please write observations about trends that hold for most or all of the samples. I will also provide you with a few observations I have already made.  Please add your own observations or if you feel the observations are comprehensive say 'COMPLETE' Some areas you may consider in your observations: topics, content, syntax, conciceness, etc. It will be useful to make an educated guess as to the nature of the task this dataset will enable. Don't be afraid to be creative"""  # noqa: E501

    examples: str = InputField(desc="Sample data points from the dataset")
    prior_observations: str = InputField(desc="Some prior observations I made about the data")
    observations: str = OutputField(
        desc="Somethings that holds true for most or all of the data you observed or COMPLETE if you have nothing to add"  # noqa: E501
    )


class DescribeProgram(Signature):
    """Below is some pseudo-code for a pipeline that solves tasks with calls to language models. Please describe what type of task this program appears to be designed to solve, and how it appears to work."""  # noqa: E501

    program_code: str = InputField(
        desc="Pseudocode for a language model program designed to solve a particular task."
    )
    program_example: str = InputField(desc="An example of the program in use.")
    program_description: str = OutputField(
        desc="Describe what task the program is designed to solve, and how it goes about solving this task."  # noqa: E501
    )


class DescribeModule(Signature):
    """Below is some pseudo-code for a pipeline that solves tasks with calls to language models. Please describe the purpose of one of the specified module in this pipeline."""  # noqa: E501

    program_code: str = InputField(
        desc="Pseudocode for a language model program designed to solve a particular task."
    )
    program_example: str = InputField(desc="An example of the program in use.")
    program_description: str = InputField(
        desc="Summary of the task the program is designed to solve, and how it goes about solving it."  # noqa: E501
    )
    module: str = InputField(desc="The module in the program that we want to describe.")
    module_description: str = OutputField(
        desc="Description of the module's role in the broader program."
    )


class GenerateSingleModuleInstruction(Signature):
    """Use the information below to learn about a task that we are trying to solve using calls to an LM, then generate a new instruction that will be used to prompt a Language Model to better solve the task."""  # noqa: E501

    dataset_description: str = InputField(desc="A description of the dataset that we are using.")
    program_code: str = InputField(
        desc="Language model program designed to solve a particular task."
    )
    program_description: str = InputField(
        desc="Summary of the task the program is designed to solve, and how it goes about solving it."  # noqa: E501
    )
    module: str = InputField(desc="The module to create an instruction for.")
    module_description: str = InputField(
        desc="Description of the module to create an instruction for."
    )
    task_demos: str = InputField(desc="Example inputs/outputs of our module.")
    basic_instruction: str = InputField(desc="Basic instruction.")
    tip: str = InputField(desc="A suggestion for how to go about generating the new instruction.")
    proposed_instruction: str = OutputField(
        desc="Propose an instruction that will be used to prompt a Language Model to perform this task."  # noqa: E501
    )


_PROGRAM_FIELDS = ("program_code", "program_description", "module", "module_description")


def instruction_signature(
    *, use_dataset_summary: bool, program_aware: bool, use_tip: bool
) -> type[Signature]:
    """The instruction generator with only the fields this proposal uses, in DSPy's order.

    ``task_demos`` and ``basic_instruction`` are always there; the dataset
    description, the four program fields and the tip only when used (DSPy's
    ``previous_instructions`` never is under MIPROv2).
    """
    dropped: set[str] = set()
    if not use_dataset_summary:
        dropped.add("dataset_description")
    if not program_aware:
        dropped.update(_PROGRAM_FIELDS)
    if not use_tip:
        dropped.add("tip")
    full = GenerateSingleModuleInstruction
    fields = [f for name, f in full.fields.items() if name not in dropped]
    return signature_from_fields(full.__name__, fields, full.instructions)
