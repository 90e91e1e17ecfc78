#!/usr/bin/env cwl-runner
# Two independent counting steps (concurrent with --parallel) feeding a sum step.
cwlVersion: v1.2
class: Workflow
inputs:
  first: File
  second: File
outputs:
  total: {type: int, outputSource: add/total}
  first_count: {type: int, outputSource: count_first/count}
steps:
  count_first:
    run: count.cwl
    in: {file: first}
    out: [count]
  count_second:
    run: count.cwl
    in: {file: second}
    out: [count]
  add:
    run: sum.cwl
    in: {a: count_first/count, b: count_second/count}
    out: [total]
