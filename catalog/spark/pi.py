# Estimate pi by sampling points in the unit square (Spark's own example, trimmed).
import sys
from operator import add
from random import random

from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("director-boot-pi").getOrCreate()
partitions = int(sys.argv[1]) if len(sys.argv) > 1 else 2
n = 100000 * partitions


def inside(_):
    x = random() * 2 - 1
    y = random() * 2 - 1
    return 1 if x * x + y * y <= 1 else 0


count = spark.sparkContext.parallelize(range(1, n + 1), partitions).map(inside).reduce(add)
print("Pi is roughly %f" % (4.0 * count / n))
spark.stop()
